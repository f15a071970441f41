"""Workflow coordination strategies (issue 4): mediator, front controller, stamp coupling,
query-all and event sourcing over one workflow definition."""
