"""Jira Cloud: ``channel`` keeps one issue per incident through REST v3; ``sync`` reads its
webhooks back (issue updates and new comments)."""
