"""ServiceNow: ``channel`` keeps one ``incident`` record per incident through the Table API;
``sync`` reads the record a business rule sends back after each update."""
