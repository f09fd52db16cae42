# edge node image: the same install steps as the README's first command.
FROM python:3.11-slim-bookworm
WORKDIR /opt/edge
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY conf ./conf
COPY plugins ./plugins
COPY .ci/setup.sh ./.ci/setup.sh
RUN bash .ci/setup.sh
ENV PATH="/opt/edge/.venv/bin:$PATH" \
    EDGE_HTTP_HOST=0.0.0.0 \
    EDGE_NODE_DATA_DIR=/var/lib/edge
# HTTP API, and the one UDP port every WebRTC session uses ([media] udp_port; set
# EDGE_MEDIA_ICE_ADDRESSES to the container's address, see README: deployment).
EXPOSE 8080 7881/udp
VOLUME /var/lib/edge
CMD ["edge", "--config", "conf/edge.toml", "serve"]
