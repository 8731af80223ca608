"""The gRPC server process (`anneal serve`; `anneal up` starts one).

It owns the front door and no state of its own: bearer tokens and TLS (`principals`,
`security`, `interceptor`), the thin servicer (`servicer`), the study and deployment domain
(`studies`, `deployments`, `access`, `limits`), Predict routing and batching (`predict`,
`batching`), the study drivers' Ray jobs (`jobs`) and the thread that keeps them running
(`keeper`). `main` builds and runs it; `service` wires the units together.
"""
