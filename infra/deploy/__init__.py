"""Deploy stacks to the hosts of env/inventory.yaml over SSH (Fabric).

Pure pieces, each testable without a host: ``targets`` (which hosts, how to reach them),
``layout`` (a host's configuration: project settings + its overrides + remote paths),
``wiring`` (addresses of services on other hosts, for templates and Traefik), ``upload``
(local vs remote checksums -> files to send), ``summary`` (per-host result rows, failure
reasons). ``run`` applies them through a fabric Connection, one host per thread.
"""
