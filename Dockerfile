# syntax=docker/dockerfile:1
#
# Risk gateway image. Read SECURITY.md before exposing anything.
#
# Build:
#   docker build -t risk-gateway .
#
# 1. Create the gateway home once, in a volume. This prints the bot secret ONCE and the path of the
#    policy-signing key; --rm so the output does not stay behind in a stopped container's log.
#    Do not set GATEWAY_MASTER_KEY for this step: init writes its own master.key. Then copy the
#    signing key out (docker cp) and off this machine; see SECURITY.md.
#      docker volume create gateway-home
#      docker run --rm -v gateway-home:/home/gateway/data risk-gateway init /home/gateway/data --json
#    For a real broker, store its key before serving (the secret on standard input, never an argument):
#      docker run --rm -i -v gateway-home:/home/gateway/data risk-gateway \
#        broker-keys set --home /home/gateway/data --venue alpaca --key-id PK...
#
# 2. Serve. Publish the port on the host's loopback ONLY (127.0.0.1:...). Bots on other machines
#    go through a TLS-terminating reverse proxy on the same host, never to this port directly.
#      docker run -d --name gateway --read-only --tmpfs /tmp --cap-drop ALL \
#        --security-opt no-new-privileges -v gateway-home:/home/gateway/data \
#        -p 127.0.0.1:8700:8700 risk-gateway
#    Other options replace the whole CMD, e.g. a real broker:
#      ... risk-gateway serve --home /home/gateway/data --listen 0.0.0.0:8700 --venue alpaca
#
# 3. Operate with the same image, uid and home. While it runs, lockdown goes through the operator
#    socket; when the container is stopped, the same command with `docker run --rm -v ...` writes
#    the state file directly and the gateway starts locked.
#      docker exec gateway gatewayctl status --home /home/gateway/data
#      docker exec gateway gatewayctl lockdown --home /home/gateway/data --reason "..."
#
# A bind mount instead of a named volume must be an empty directory owned by uid 10001, mode 700:
# the gateway refuses secret files that other users can read, and a master key file owned by a
# uid other than the one running it.

ARG PYTHON_IMAGE=python:3.11-slim
# For reproducible, reviewable builds pin the base by digest: python:3.11-slim@sha256:...

# --- build: install the package and its dependencies into a self-contained virtualenv --------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY . .
# gateway/default_policy.yaml is a symlink to ../policies/default.yaml; COPY keeps the link and
# its target, and the wheel build stores the real file. The check runs from / so that it imports
# the installed package, not /src/gateway.
RUN python -m venv /opt/gateway \
 && /opt/gateway/bin/pip install --no-cache-dir . \
 && cd / \
 && /opt/gateway/bin/python -c "import pathlib, gateway, yaml; p = pathlib.Path(gateway.__file__).with_name('default_policy.yaml'); assert p.is_file() and not p.is_symlink(), p; assert isinstance(yaml.safe_load(p.read_text()), dict), p" \
 && /opt/gateway/bin/gatewayctl --help > /dev/null

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/gateway/bin:${PATH}

# A fixed, unprivileged uid/gid so volume ownership is predictable across rebuilds.
RUN groupadd --gid 10001 gateway \
 && useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /home/gateway --shell /usr/sbin/nologin gateway \
 && install -d -m 0755 -o 10001 -g 10001 /home/gateway \
 && install -d -m 0700 -o 10001 -g 10001 /home/gateway/data

COPY --from=build /opt/gateway /opt/gateway

USER 10001:10001
WORKDIR /home/gateway

# The gateway home: keys, policy, trading state and the audit log. A new named volume copies
# this directory's owner (10001) and mode (700) from the image.
VOLUME ["/home/gateway/data"]

EXPOSE 8700

# 200 from /health means "serving", not "trading": it also answers while LOCKED. No curl in slim,
# so python's urllib, with proxies disabled so an HTTP(S)_PROXY variable cannot reroute it.
# If you change --listen, change the port here too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/python", "-c", "import sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8700/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["gatewayctl"]
# 0.0.0.0 is the container's own network namespace only: it is what lets Docker's port forwarding
# reach the process. It is NOT an instruction to expose the port: publish it on the host's
# loopback (-p 127.0.0.1:8700:8700), never as -p 8700:8700, which listens on every host interface.
# Containers on the same Docker network reach this plain-HTTP port too: attach only the TLS proxy
# (or nothing) to it.
CMD ["serve", "--home", "/home/gateway/data", "--listen", "0.0.0.0:8700"]
