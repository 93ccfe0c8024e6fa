// @coin-manor/client: the Coin Manor WebSocket client for browsers and Node.

export { ManorClient } from "./client.js";
export { ManorError, RETRYABLE } from "./requests.js";
export { jsonCodec, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK } from "./codec.js";
export { OP_NAMES, OPS, PUSH_NAMES, PUSHES } from "./ops.js";
export { PushOrder } from "./order.js";

/** @typedef {import("./ops.js").OpMap} OpMap */
/** @typedef {import("./ops.js").OpName} OpName */
/** @typedef {import("./ops.js").PushMap} PushMap */
/** @typedef {import("./ops.js").PushName} PushName */
/** @typedef {import("./codec.js").Codec} Codec */
/** @typedef {import("./client.js").ClientOptions} ClientOptions */
/** @typedef {import("./client.js").CallOptions} CallOptions */
/** @typedef {import("./client.js").Status} Status */
/** @typedef {import("./emitter.js").ClientEvents} ClientEvents */
