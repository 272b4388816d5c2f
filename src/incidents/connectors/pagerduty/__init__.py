"""PagerDuty, three ways: ``channel`` sends incidents out as Events API v2 triggers,
acknowledges and resolves; ``sync`` reads its v3 webhooks back (acknowledged, resolved,
reopened, annotated, priority updated); ``adapter`` takes Events API v2 from producers
(``POST /v2/enqueue``) as ``im.alert.*`` events."""
