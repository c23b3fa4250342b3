# Muscle-memory aliases: one line each, every one calls invoke. No logic lives here.
VENV   ?= .venv
INVOKE := $(VENV)/bin/invoke
ARGS   ?=

.PHONY: bootstrap up down ps logs status restart pull render plan config check doctor certs cert-ca cert-intermediate cert-registry verify-certs test-tls trust renew test e2e lint bench

# The only target that does not call invoke: it creates the virtual environment invoke lives in.
$(VENV)/.installed: pyproject.toml ; python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[dev]' && $(INVOKE) setup && touch $@
bootstrap: $(VENV)/.installed

up: bootstrap ; $(INVOKE) up $(ARGS)
down: bootstrap ; $(INVOKE) down $(ARGS)
ps: bootstrap ; $(INVOKE) ps $(ARGS)
logs: bootstrap ; $(INVOKE) logs $(ARGS)
status: bootstrap ; $(INVOKE) status $(ARGS)
restart: bootstrap ; $(INVOKE) restart $(ARGS)
pull: bootstrap ; $(INVOKE) pull $(ARGS)
render: bootstrap ; $(INVOKE) render $(ARGS)
plan: bootstrap ; $(INVOKE) plan $(ARGS)
config: bootstrap ; $(INVOKE) config $(ARGS)
check: bootstrap ; $(INVOKE) check $(ARGS)
doctor: bootstrap ; $(INVOKE) doctor $(ARGS)
certs: bootstrap ; $(INVOKE) certs $(ARGS)
cert-ca: bootstrap ; $(INVOKE) certs.ca $(ARGS)
cert-intermediate: bootstrap ; $(INVOKE) certs.intermediate $(ARGS)
cert-registry: bootstrap ; $(INVOKE) certs.registry $(ARGS)
verify-certs: bootstrap ; $(INVOKE) certs.verify $(ARGS)
test-tls: bootstrap ; $(INVOKE) certs.test-tls $(ARGS)
trust: bootstrap ; $(INVOKE) certs.trust $(ARGS)
renew: bootstrap ; $(INVOKE) certs.renew $(ARGS)
test: bootstrap ; $(INVOKE) test $(ARGS)
e2e: bootstrap ; $(INVOKE) test --session=e2e $(ARGS)
lint: bootstrap ; $(INVOKE) test --session=lint $(ARGS)
bench: bootstrap ; $(INVOKE) bench $(ARGS)
