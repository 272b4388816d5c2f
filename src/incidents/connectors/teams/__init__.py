"""Microsoft Teams: ``channel`` posts one Adaptive Card per event to a workflow webhook."""
