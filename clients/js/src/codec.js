// Frame encodings. JSON (text frames, subprotocol manor.v1.json) is built in; msgpack
// (binary frames, manor.v1.msgpack, what the mobile apps use) needs a msgpack library,
// passed in as a codec so that browsers that do not want one do not load it:
//
//   import * as msgpack from "@msgpack/msgpack";
//   new ManorClient(url, { token, codec: msgpack });

export const SUBPROTOCOL_JSON = "manor.v1.json";
export const SUBPROTOCOL_MSGPACK = "manor.v1.msgpack";

/**
 * Anything with encode and decode, e.g. the `@msgpack/msgpack` module itself.
 * `subprotocol` defaults to manor.v1.msgpack.
 * @typedef {{
 *   encode(message: unknown): Uint8Array | string,
 *   decode(data: Uint8Array): unknown,
 *   subprotocol?: string,
 * }} Codec
 */

const utf8 = new TextDecoder();

/** @type {Codec} */
export const jsonCodec = Object.freeze({
  subprotocol: SUBPROTOCOL_JSON,
  encode: (/** @type {unknown} */ message) => JSON.stringify(message),
  decode: (/** @type {Uint8Array} */ data) => JSON.parse(utf8.decode(data)),
});

const utf8Encoder = new TextEncoder();

/**
 * A frame as the socket delivered it (a string for text frames, an ArrayBuffer or a
 * Uint8Array/Buffer for binary ones) decoded to a message.
 * @param {Codec} codec
 * @param {unknown} data
 * @returns {unknown}
 */
export function decodeFrame(codec, data) {
  if (typeof data === "string") {
    return codec === jsonCodec ? JSON.parse(data) : codec.decode(utf8Encoder.encode(data));
  }
  if (data instanceof ArrayBuffer) return codec.decode(new Uint8Array(data));
  if (ArrayBuffer.isView(data)) {
    return codec.decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  throw new TypeError("unexpected frame type");
}
