"""Local clusters of the distributed engines (RabbitMQ, Galera, Redis Sentinel), beside
the machine's own single nodes.

Each module starts several nodes of one engine on free loopback ports (own folders and
sockets) for tests and for `make cluster-*` (`python -m mesh.cluster.<engine> up|down
--dir D`), and removes everything again; standard library only, so it runs before
anything else is installed.
"""
