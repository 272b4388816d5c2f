"""Where events leave: the deliveries' lanes and records (``lanes``), the channels that render
them (``channels/``), the transport that sends them past the outbound-address guard
(``address_guard``), their signatures and the subscription secrets the channels open."""
