"""Submit orders to paywatch on a Redis Cluster with redis-py's cluster client.

Run by tests/it/cluster.rs. Environment: CLUSTER_NODES (host:port,host:port,...),
PAYWATCH_PREFIX, PAYWATCH_SHARDS, ORDERS (a JSON list of [order_id, payment_id]). Prints one
reply per order; exits non-zero on any surprise.
"""

import json
import os
import zlib

from redis.cluster import ClusterNode, RedisCluster

nodes = [ClusterNode(*n.rsplit(":", 1)) for n in os.environ["CLUSTER_NODES"].split(",")]
rc = RedisCluster(startup_nodes=nodes, decode_responses=True)
prefix = os.environ["PAYWATCH_PREFIX"]
shards = int(os.environ["PAYWATCH_SHARDS"])

for order_id, payment_id in json.loads(os.environ["ORDERS"]):
    key = f"{prefix}:{{check-payment.{zlib.crc32(order_id.encode()) % shards}}}"
    order = {"order_id": order_id, "provider": "cashless", "payment_id": payment_id,
             "notify": {"email": "buyer@example.com"}}
    reply = rc.fcall("paywatch_submit", 1, key, json.dumps(order))
    assert reply == ["created", "pending", "watching"], reply
    print(order_id, key, reply)
