"""Deploy stacks to the hosts of env/inventory.yaml over SSH (Fabric).

Pure pieces, each testable without a host: ``targets`` (which hosts, how to reach them),
``layout`` (a host's configuration: project settings + its overrides + remote paths),
``upload``
(local vs remote checksums -> files to send), ``summary`` (per-host result rows, failure
reasons). ``run`` applies them through a fabric Connection, one host per thread. Where a
service on another host is reached (templates, Traefik) is rendering's: ``infra.wiring``.
"""
