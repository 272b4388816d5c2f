"""Where events leave: routing to subscriptions and signed webhook delivery."""
