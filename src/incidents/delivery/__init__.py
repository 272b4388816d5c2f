"""Where events leave: the deliveries' lanes and records (``lanes``) and their reads
(``delivery_queries``), the channels that render them (``channels/``), the transport that
sends them past the outbound-address guard (``address_guard``), and the CloudEvents
webhook's handshake (``handshake``)."""
