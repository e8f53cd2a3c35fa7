"""Large cases: 50k, 100k and 200k lines, with the cause early, in the middle, and late."""

from __future__ import annotations

import json

from eval.incidents.builder import Builder, iso, redis_time
from eval.incidents.common import metrics_export_errors, postgres_background
from eval.incidents.formats import compact_json, postgres, pylog, zap
from eval.incidents.model import Case, Expected
from eval.incidents.spec import Spec, window
from eval.incidents.traffic import (
    Request,
    Route,
    log_envoy,
    log_gunicorn,
    log_probes,
    probe_access,
    requests,
    spread,
)

# --- large-redis-failover (~50k lines, cause early) -----------------------------------------

MASTER_DOWN_AT = 384.0
OLD_MASTER, NEW_MASTER = "10.244.3.21", "10.244.1.14"
REDIS_BACK_AT = 702.0


def gen_redis_failover(b: Builder) -> None:
    """redis-0's node dies; Sentinel fails over; chat-api bypasses Sentinel and breaks."""
    envoy = b.pods("edge", 2)
    chat = b.pods("chat-api", 4)
    ws = b.pods("ws-gateway", 3)
    _sentinels(b)
    _redis_servers(b)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        1.78,
        (
            Route("GET", "/api/rooms/{id}/messages?limit=50", 5, ms=18, size=9000),
            Route("POST", "/api/rooms/{id}/messages", 2, ms=25, size=400),
            Route("PUT", "/api/presence", 2, ms=6, size=60),
            Route("GET", "/api/users/{id}", 2, ms=8, size=700),
        ),
    )
    ips = {pod: b.pod_ip() for pod in chat}
    served = spread(reqs, chat)
    upstream = {r.rid: f"{ips[pod]}:8000" for pod, r in served}
    for pod, r in served:
        _chat_request(b, pod, r)
    for i, pod in enumerate(envoy):
        log_envoy(b, pod, reqs[i::2], "chat.example.com", lambda r: upstream[r.rid])
    for pod in chat:
        log_probes(b, pod, "api", b.lo, b.hi, 10.0, probe_access(b, "10.244.0.1", "/healthz"))
    for pod in ws:
        _ws_gateway(b, pod)


def _sentinel_line(b: Builder, t: float, text: str) -> str:
    return f"1:X {redis_time(b.at(t))} {text}"


def _sentinels(b: Builder) -> None:
    """Sentinels on redis-1 and redis-2 agree the master is down and promote redis-1."""
    t0 = MASTER_DOWN_AT + 5.0  # down-after-milliseconds 5000
    for i, pod in ((1, "redis-1"), (2, "redis-2")):
        lines = [
            (0.0, f"# +sdown master mymaster {OLD_MASTER} 6379"),
            (0.05 * i, f"# +odown master mymaster {OLD_MASTER} 6379 #quorum 2/2"),
            (0.06 * i, "# +new-epoch 41"),
        ]
        if i == 1:
            lines += [
                (0.1, f"# +try-failover master mymaster {OLD_MASTER} 6379"),
                (0.2, f"# +vote-for-leader {b.hex(40)} 41"),
                (0.3, f"# +elected-leader master mymaster {OLD_MASTER} 6379"),
                (
                    0.4,
                    f"# +selected-slave slave {NEW_MASTER}:6379 {NEW_MASTER} 6379 @ mymaster "
                    f"{OLD_MASTER} 6379",
                ),
                (
                    0.5,
                    f"* +failover-state-send-slaveof-noone slave {NEW_MASTER}:6379 "
                    f"{NEW_MASTER} 6379 @ mymaster {OLD_MASTER} 6379",
                ),
                (1.4, f"# +failover-end master mymaster {OLD_MASTER} 6379"),
            ]
        lines.append(
            (1.5 + 0.01 * i, f"# +switch-master mymaster {OLD_MASTER} 6379 {NEW_MASTER} 6379")
        )
        for dt, text in lines:
            b.log(pod, "sentinel", t0 + dt, _sentinel_line(b, t0 + dt, text))
    for t in b.ticks(REDIS_BACK_AT, REDIS_BACK_AT + 2, 10.0):
        b.log(
            "redis-1",
            "sentinel",
            t + 1.5,
            _sentinel_line(
                b,
                t + 1.5,
                f"* +convert-to-slave slave {OLD_MASTER}:6379 {OLD_MASTER} 6379 @ "
                f"mymaster {NEW_MASTER} 6379",
            ),
        )


def _redis_servers(b: Builder) -> None:
    for t in b.ticks(b.lo, MASTER_DOWN_AT, 300.0):
        b.log(
            "redis-0",
            "redis",
            t,
            f"1:M {redis_time(b.at(t))} * 100 changes in 300 seconds. Saving...",
        )
    t = MASTER_DOWN_AT + 6.6
    b.log("redis-1", "redis", t, f"1:M {redis_time(b.at(t))} * Connection with master lost.")
    b.log(
        "redis-1",
        "redis",
        t + 0.2,
        f"1:M {redis_time(b.at(t + 0.2))} * MASTER MODE enabled "
        "(user request from 'id=9 addr=10.244.2.9:41822')",
    )
    back = "redis-0#2"
    for dt, text in (
        (0.0, "* Redis version=7.2.5, bits=64, commit=00000000, modified=0, pid=1, just started"),
        (0.3, f"* Connecting to MASTER {NEW_MASTER}:6379"),
        (0.9, "* MASTER <-> REPLICA sync: Finished with success"),
    ):
        b.log(
            back, "redis", REDIS_BACK_AT + dt, f"1:S {redis_time(b.at(REDIS_BACK_AT + dt))} {text}"
        )


def _chat_request(b: Builder, pod: str, r: Request) -> None:
    rng = b.rng
    writes = r.method in ("POST", "PUT")
    if MASTER_DOWN_AT < r.t < REDIS_BACK_AT and rng.random() < 0.8:
        r.status, r.ms = 500, 5000.0 + rng.uniform(0, 30)
        b.log(
            pod,
            "api",
            r.t + 5,
            pylog(
                b.at(r.t + 5), "ERROR", "chat.presence", "redis error: Timeout connecting to server"
            ),
        )
    elif r.t >= REDIS_BACK_AT and writes:
        r.status, r.ms = 500, rng.uniform(2, 9)
        b.log(
            pod,
            "api",
            r.t,
            pylog(
                b.at(r.t),
                "ERROR",
                "chat.presence",
                "redis error: READONLY You can't write against a read only replica.",
            ),
        )
    log_gunicorn(b, pod, "api", [r])


def _ws_gateway(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.poisson(b.lo, b.hi, 0.5):
        session = b.hex(16)
        b.log(
            pod,
            "ws",
            t,
            zap(
                b.at(t),
                "info",
                "ws/hub.go:77",
                "client connected",
                session=session,
                room=rng.randrange(100, 9999),
            ),
        )
        gone = t + rng.uniform(5, 600)
        b.log(
            pod,
            "ws",
            gone,
            zap(
                b.at(gone),
                "info",
                "ws/hub.go:91",
                "client disconnected",
                session=session,
                code=1000,
            ),
        )
    t = MASTER_DOWN_AT + rng.uniform(0.5, 3)
    b.log(
        pod,
        "ws",
        t,
        zap(
            b.at(t),
            "warn",
            "pubsub/redis.go:58",
            "redis connection lost, asking sentinel for master",
            error=f"read tcp 10.244.4.7:52144->{OLD_MASTER}:6379: i/o timeout",
        ),
    )
    b.log(
        pod,
        "ws",
        t + 4,
        zap(
            b.at(t + 4),
            "info",
            "pubsub/redis.go:71",
            "connected to redis master",
            addr=f"{NEW_MASTER}:6379",
        ),
    )


REDIS_FAILOVER = Spec(
    Case(
        name="large-redis-failover",
        story=(
            "At 07:06 the node of redis-0 (the master) dies; Sentinel marks it down and fails "
            "over to 10.244.1.14 (+odown, +failover-end, +switch-master). ws-gateway asks "
            "Sentinel and recovers in seconds, but chat-api is configured with redis-0 "
            "directly: it times out while the node is gone and, once redis-0 returns as a "
            "replica, every write fails with READONLY for the rest of the hour."
        ),
        namespace="eval-large-redis",
        start=window("2026-12-01T07:00:00Z", 60)[0],
        end=window("2026-12-01T07:00:00Z", 60)[1],
        expected=Expected(
            cause_pattern=r"\+odown master mymaster|\+failover-end master mymaster|"
            r"\+switch-master mymaster",
            cause_keywords=("failover",),
        ),
        forbidden=(),
        tags=("large", "redis", "sentinel", "python", "envoy", "json"),
        approx_lines=50_000,
        question="chat-api returns 500 on every write. Why?",
    ),
    gen_redis_failover,
)

# --- large-dropped-index (~100k lines, cause in the middle) ---------------------------------

INDEX_DROPPED_AT = 1791.4
CUSTOMER_ORDERS = "/api/customers/{id}/orders"


def gen_dropped_index(b: Builder) -> None:
    """A cleanup migration drops an index still used by the customer-orders query."""
    rng = b.rng
    edge = b.pods("edge", 2)
    api = b.pods("orders-api", 4)
    pg = "postgres-0"
    postgres_background(b, pg, b.lo, b.hi, database="orders")
    _index_migration(b, pg)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        5.7,
        (
            Route("GET", "/api/orders/{id}", 5, ms=6, size=1200),
            Route("GET", CUSTOMER_ORDERS, 3, ms=9, size=7000),
            Route("POST", "/api/orders", 1, ms=25, size=600),
            Route("GET", "/api/products/{id}", 3, ms=4, size=900),
        ),
    )
    ips = {pod: b.pod_ip() for pod in api}
    served = spread(reqs, api)
    upstream = {r.rid: f"{ips[pod]}:8080" for pod, r in served}
    for pod, r in served:
        if r.route.path == CUSTOMER_ORDERS and r.t > INDEX_DROPPED_AT + 0.5:
            _slow_customer_orders(b, pod, pg, r)
        _orders_access(b, pod, r)
        if rng.random() < 0.35:
            b.log(
                pod,
                "api",
                r.t + 0.0005,
                zap(
                    b.at(r.t),
                    "debug",
                    "cache/lru.go:41",
                    "cache lookup",
                    cache_key=f"order:{r.path.rsplit('/', 1)[-1]}",
                    hit=rng.random() < 0.7,
                ),
            )
    for pod in api:
        metrics_export_errors(b, pod, "api")
    for i, pod in enumerate(edge):
        log_envoy(
            b,
            pod,
            reqs[i::2],
            "orders.example.com",
            lambda r: upstream[r.rid],
            flags=lambda r: "UT" if r.status == 504 else "-",
        )


def _index_migration(b: Builder, pg: str) -> None:
    job = f"orders-migrate-{b.token(5)}"
    t = INDEX_DROPPED_AT - 2.3
    for dt, msg in (
        (0.0, "Context impl PostgresqlImpl."),
        (0.01, "Will assume transactional DDL."),
        (1.9, "Running upgrade 9c2f1a7b3d4e -> 1b7e2c9d0a5f, drop unused indexes"),
    ):
        b.log(job, "migrate", t + dt, f"INFO  [alembic.runtime.migration] {msg}", stream="stderr")
    b.log(
        pg,
        "postgres",
        INDEX_DROPPED_AT,
        postgres(
            b.at(INDEX_DROPPED_AT),
            31877,
            "LOG",
            "statement: DROP INDEX CONCURRENTLY IF EXISTS idx_orders_customer_id",
            "migrator@orders",
        ),
        stream="stderr",
    )
    b.log(
        pg,
        "postgres",
        INDEX_DROPPED_AT + 0.4,
        postgres(
            b.at(INDEX_DROPPED_AT + 0.4),
            31877,
            "LOG",
            "statement: DROP INDEX CONCURRENTLY IF EXISTS idx_order_items_legacy_sku",
            "migrator@orders",
        ),
        stream="stderr",
    )


def _slow_customer_orders(b: Builder, pod: str, pg: str, r: Request) -> None:
    rng = b.rng
    query_ms = rng.uniform(1800, 4200)
    customer = r.path.split("/")[3]
    r.ms = query_ms + rng.uniform(2, 8)
    if r.ms > 3000:
        r.status, r.ms = 504, 3000.0
    done = r.t + query_ms / 1000
    b.block(
        pg,
        "postgres",
        done,
        [
            postgres(
                b.at(done),
                rng.randrange(3000, 9000),
                "LOG",
                f"duration: {query_ms:.3f} ms  execute <unnamed>: SELECT id, status, "
                "total_cents, created_at FROM orders WHERE customer_id = $1 ORDER BY "
                "created_at DESC LIMIT 20",
                "api@orders",
            ),
            postgres(
                b.at(done),
                rng.randrange(3000, 9000),
                "DETAIL",
                f"parameters: $1 = '{customer}'",
                "api@orders",
            ),
        ],
    )
    if r.status != 504:
        b.log(
            pod,
            "api",
            done + 0.001,
            zap(
                b.at(done),
                "warn",
                "http/middleware.go:71",
                "slow request",
                path=r.path,
                duration_ms=round(r.ms, 1),
            ),
        )


def _orders_access(b: Builder, pod: str, r: Request) -> None:
    end = r.t + r.ms / 1000
    if r.status == 504:
        b.log(
            pod,
            "api",
            end,
            zap(
                b.at(end),
                "error",
                "http/middleware.go:66",
                "request canceled",
                path=r.path,
                error="context canceled",
                duration_ms=round(r.ms, 1),
            ),
        )
        return
    b.log(
        pod,
        "api",
        end,
        zap(
            b.at(end),
            "info",
            "http/middleware.go:64",
            "request served",
            method=r.method,
            path=r.path,
            status=r.status,
            duration_ms=round(r.ms, 1),
            request_id=r.rid,
        ),
    )


DROPPED_INDEX = Spec(
    Case(
        name="large-dropped-index",
        story=(
            "At 14:29 a cleanup migration (alembic 'drop unused indexes') runs DROP INDEX "
            "CONCURRENTLY idx_orders_customer_id, an index the customer order-history query "
            "still needs. The query turns into a sequential scan of 40M rows: hundreds of "
            "Postgres slow-query logs, slow requests and 504s at the edge for that endpoint "
            "only. Fix: recreate the index."
        ),
        namespace="eval-large-index",
        start=window("2026-12-01T14:00:00Z", 60)[0],
        end=window("2026-12-01T14:00:00Z", 60)[1],
        expected=Expected(
            # The migration that ran the DROP (its alembic banner) names the cause as well.
            # No index name: the template masks it (strict scoring reads the template).
            cause_pattern=r"DROP INDEX CONCURRENTLY IF EXISTS|drop unused indexes",
            cause_keywords=("index", "customer_id"),
        ),
        forbidden=(),
        tags=("large", "database", "postgres", "migration", "json", "envoy"),
        approx_lines=100_000,
        question="Order history got slow around 14:30. What changed?",
    ),
    gen_dropped_index,
)

# --- large-es-flood-stage (~200k lines, cause late) -----------------------------------------

HIGH_WATERMARK_AT = 2405.0
FLOOD_STAGE_AT = 3151.0
ES_NODE_IDS = ("Aw2kR8VvQpy0cZ7u9bXQ1g", "Lq7cN1xTR3ymB0pZk2Vd8w", "Zt5fP9wQe2kD6nH1xM4rJa")


def es_json(at: float, level: str, logger: str, thread: str, node: str, message: str) -> str:
    """An Elasticsearch 8 ECS JSON log line (its own spacing included)."""
    head = (
        f'{{"@timestamp":"{iso(at)}", "log.level": "{level}", '
        f'"message":{json.dumps(message)}, "ecs.version": "1.2.0",'
    )
    tail = compact_json(
        {
            "service.name": "ES_ECS",
            "event.dataset": "elasticsearch.server",
            "process.thread.name": f"elasticsearch[{node}][{thread}]",
            "log.logger": logger,
            "elasticsearch.node.name": node,
            "elasticsearch.cluster.name": "search",
        }
    )
    return head + tail[1:]


def gen_es_flood_stage(b: Builder) -> None:
    """es-data-2's disk fills with a runaway index; the flood stage blocks writes late on."""
    edge = b.pods("edge", 2)
    search = b.pods("search-api", 4)
    indexers = b.pods("indexer", 3)
    reqs = requests(
        b,
        b.lo,
        b.hi,
        12.3,
        (
            Route("GET", "/api/search?q={sku}&page=1", 6, ms=35, size=14_000),
            Route("GET", "/api/suggest?prefix=sh", 3, ms=8, size=900),
            Route("GET", "/api/products/{id}", 4, ms=10, size=2500),
        ),
    )
    ips = {pod: b.pod_ip() for pod in search}
    served = spread(reqs, search)
    upstream = {r.rid: f"{ips[pod]}:8000" for pod, r in served}
    for pod, r in served:
        log_gunicorn(b, pod, "api", [r])
    for i, pod in enumerate(edge):
        log_envoy(b, pod, reqs[i::2], "search.example.com", lambda r: upstream[r.rid])
    for pod in indexers:
        _indexer(b, pod)
    _es_master(b)
    for i, node in enumerate(("es-data-0", "es-data-1", "es-data-2")):
        _es_data(b, node, i)


def _indexer(b: Builder, pod: str) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 1.0, jitter=0.3):
        if t < FLOOD_STAGE_AT + 20 or rng.random() < 0.3:
            b.log(
                pod,
                "indexer",
                t,
                zap(
                    b.at(t),
                    "info",
                    "bulk/writer.go:88",
                    "bulk indexed",
                    index="products-v7",
                    items=500,
                    took_ms=rng.randrange(80, 400),
                ),
            )
            continue
        b.log(
            pod,
            "indexer",
            t,
            zap(
                b.at(t),
                "error",
                "bulk/writer.go:102",
                "bulk request had item failures",
                index="products-v7",
                failed=rng.randrange(120, 500),
                first_error="cluster_block_exception: index [products-v7] blocked by: "
                "[TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index "
                "has read-only-allow-delete block];",
            ),
        )
        b.log(
            pod,
            "indexer",
            t + 0.002,
            zap(b.at(t), "warn", "bulk/writer.go:117", "retrying failed items", backoff="1s"),
        )


def _es_master(b: Builder) -> None:
    node = "es-master-0"
    logger = "org.elasticsearch.cluster.routing.allocation.DiskThresholdMonitor"
    path = f"[{ES_NODE_IDS[2]}][es-data-2][/usr/share/elasticsearch/data]"
    for t in b.ticks(b.lo, b.hi, 60.0, jitter=0.01):
        free = max(3.8, 14.9 - max(0.0, t - 1200) * 0.0046)
        pct = free
        if t >= FLOOD_STAGE_AT:
            level, msg = (
                "WARN",
                (
                    f"flood stage disk watermark [95%] exceeded on {path} free: "
                    f"{free:.1f}gb[{pct:.1f}%], all indices on this node will be "
                    "marked read-only"
                ),
            )
        elif t >= HIGH_WATERMARK_AT:
            level, msg = (
                "WARN",
                (
                    f"high disk watermark [90%] exceeded on {path} free: "
                    f"{free:.1f}gb[{pct:.1f}%], shards will be relocated away "
                    "from this node; currently relocating away shards totalling "
                    "[0] bytes; the node is expected to continue to exceed the "
                    "high disk watermark when these relocations are complete"
                ),
            )
        else:
            level, msg = (
                "INFO",
                (
                    f"low disk watermark [85%] exceeded on {path} free: "
                    f"{free:.1f}gb[{pct:.1f}%], replicas will not be assigned to "
                    "this node"
                ),
            )
        b.log(node, "elasticsearch", t, es_json(b.at(t), level, logger, "generic][T#3", node, msg))


def _es_data(b: Builder, node: str, i: int) -> None:
    rng = b.rng
    for t in b.ticks(b.lo, b.hi, 40.0, jitter=0.5):
        young = rng.randrange(120, 900)
        msg = (
            f"[gc][{int(t + 90_000)}] overhead, spent [{young}ms] collecting in the last "
            f"[{rng.uniform(1.0, 1.6):.1f}s]"
        )
        b.log(
            node,
            "elasticsearch",
            t,
            es_json(
                b.at(t),
                "INFO",
                "org.elasticsearch.monitor.jvm.JvmGcMonitorService",
                "scheduler][T#1",
                node,
                msg,
            ),
        )
    if i == 2:
        for t in b.ticks(b.lo, b.hi, 900.0):
            b.log(
                node,
                "elasticsearch",
                t,
                es_json(
                    b.at(t),
                    "INFO",
                    "org.elasticsearch.cluster.metadata.MetadataCreateIndexService",
                    "masterService#updateTask][T#1",
                    node,
                    f"[audit-{iso(b.at(t))[:10]}-{rng.randrange(100, 999)}] creating index, cause "
                    "[auto(bulk api)], templates [audit], shards [1]/[0]",
                ),
            )


ES_FLOOD_STAGE = Spec(
    Case(
        name="large-es-flood-stage",
        story=(
            "A runaway audit job creates a new index every 15 minutes on es-data-2, whose disk "
            "fills through the hour: low, then high watermark warnings, and at 16:52 the flood "
            "stage watermark (95%): Elasticsearch marks the indices on that node read-only and "
            "every bulk request of the indexers fails with cluster_block_exception. Search "
            "still works; only writes are blocked."
        ),
        namespace="eval-large-search",
        start=window("2026-12-01T16:00:00Z", 60)[0],
        end=window("2026-12-01T16:00:00Z", 60)[1],
        expected=Expected(
            cause_pattern=r"flood stage disk watermark \S+ exceeded on",
            cause_keywords=("flood stage", "disk"),
        ),
        forbidden=(),
        tags=("large", "elasticsearch", "disk", "json", "python", "envoy"),
        approx_lines=200_000,
        question="Product updates stopped reaching search. Why?",
        scan_limit=250_000,
    ),
    gen_es_flood_stage,
)

SPECS = (REDIS_FAILOVER, DROPPED_INDEX, ES_FLOOD_STAGE)
