"""Local, real servers for development, tests and benchmarks: PostgreSQL, S3, FL deployments.

Each is started on a free port, waited on until ready, and stopped by PID: never by process name.
"""
