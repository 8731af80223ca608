"""Serving a model: the package a study's best trial leaves (`package`), deploying it to Ray
Serve (`deploy`), and the Serve replica that answers predictions (`replica`).

`replica` runs in each Serve replica's process; `package` and `deploy` run in the server
(Deploy) and in a study's driver (scoring the best model, `deploy.auto`).
"""
