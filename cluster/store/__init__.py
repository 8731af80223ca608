"""The store: studies, trials, the event stream and deployments (SQLite or PostgreSQL).

A library that the server, every study driver and the trial writer process run, each with
its own connection: the `Store` (`store`), its tables (`schema`), its database connection
(`engine`) and the upgrade of a store an older anneal made (`upgrade`).
"""
