"""Submit an order to paywatch from Python, straight into Redis (docs/enqueue-from-any-language.md).

Run by tests/tests/clients.rs against a real worker and the sandbox; it exits non-zero on any
surprise. Environment: REDIS_URL, PAYWATCH_PREFIX, PAYWATCH_SHARDS, ORDER_ID, PAYMENT_ID.
"""

import json
import os
import sys
import time
import zlib

import redis

r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), decode_responses=True)
prefix = os.environ.get("PAYWATCH_PREFIX", "paywatch")
shards = int(os.environ.get("PAYWATCH_SHARDS", "1"))


def shard_key(order_id: str) -> str:
    """The one key a paywatch function takes: the order's shard."""
    return f"{prefix}:{{check-payment.{zlib.crc32(order_id.encode()) % shards}}}"


def submit(order: dict) -> list:
    return r.fcall("paywatch_submit", 1, shard_key(order["order_id"]), json.dumps(order))


order = {
    "order_id": os.environ["ORDER_ID"],
    "provider": "cashless",
    "payment_id": os.environ["PAYMENT_ID"],
    "notify": {"email": "buyer@example.com"},
    "metadata": {"cart": 3, "source": "python"},
}

# 1. Submit: created, its first check is due now.
print("submit:", submit(order))

# 2. A bad order: a Redis error naming the field, nothing written.
bad = dict(order, order_id=order["order_id"] + "-bad", notify={"email": "a@b.com,c@d.com"})
try:
    submit(bad)
    sys.exit("a bad order was accepted")
except redis.ResponseError as e:
    print("bad order:", e)

# 3. Wait until a worker has checked it and the provider said paid.
deadline = time.monotonic() + 30
while True:
    found = r.fcall_ro("paywatch_get", 1, shard_key(order["order_id"]), order["order_id"])
    phase, record = found[0], json.loads(found[1])
    state = record[7] if len(record) > 7 and record[7] else {}
    if state.get("s") == "paid":
        print("checked:", phase, state["s"], "after", state["p"]["checks"], "checks")
        break
    if time.monotonic() > deadline:
        sys.exit(f"not paid in time: {found}")
    time.sleep(0.05)

# 4. Submitting it again is harmless: it exists, with its status.
print("resubmit:", submit(order))
