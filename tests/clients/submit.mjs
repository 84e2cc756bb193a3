// Submit an order to paywatch from Node, straight into Redis (docs/enqueue-from-any-language.md).
//
// Run by tests/tests/clients.rs against a real worker and the sandbox; it exits non-zero on any
// surprise. Environment: REDIS_URL, PAYWATCH_PREFIX, PAYWATCH_SHARDS, ORDER_ID, PAYMENT_ID.
import { crc32 } from "node:zlib";
import Redis from "ioredis";

const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const prefix = process.env.PAYWATCH_PREFIX ?? "paywatch";
const shards = Number(process.env.PAYWATCH_SHARDS ?? "1");

// The one key a paywatch function takes: the order's shard.
const shardKey = (orderId) => `${prefix}:{check-payment.${crc32(orderId) % shards}}`;
const submit = (order) =>
  redis.call("FCALL", "paywatch_submit", 1, shardKey(order.order_id), JSON.stringify(order));

const order = {
  order_id: process.env.ORDER_ID,
  provider: "cashless",
  payment_id: process.env.PAYMENT_ID,
  notify: { email: "buyer@example.com" },
  metadata: { cart: 3, source: "node" },
};

try {
  // 1. Submit: created, its first check is due now.
  console.log("submit:", JSON.stringify(await submit(order)));

  // 2. A bad order: a Redis error naming the field, nothing written.
  try {
    await submit({ ...order, order_id: `${order.order_id}-bad`, notify: { email: "a@b.com,c@d.com" } });
    throw new Error("a bad order was accepted");
  } catch (e) {
    if (!(e instanceof Redis.ReplyError)) throw e;
    console.log("bad order:", e.message);
  }

  // 3. Wait until a worker has checked it and the provider said paid.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const [phase, json] = await redis.call("FCALL_RO", "paywatch_get", 1, shardKey(order.order_id), order.order_id);
    const state = JSON.parse(json)[7] ?? {};
    if (state.s === "paid") {
      console.log("checked:", phase, state.s, "after", state.p.checks, "checks");
      break;
    }
    if (Date.now() > deadline) throw new Error(`not paid in time: ${json}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }

  // 4. Submitting it again is harmless: it exists, with its status.
  console.log("resubmit:", JSON.stringify(await submit(order)));
} finally {
  redis.disconnect();
}
