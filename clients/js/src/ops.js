// The ops and pushes of the WebSocket API v1, in one declarative file: the names (OPS,
// PUSHES) and their typed shapes (OpMap, PushMap). test/asyncapi.test.js checks the
// names against docs/asyncapi.yaml, so adding an op to the document without adding it
// here (or the reverse) fails the tests. The client itself is generic: client.call(op,
// args) sends any op; these types only add checking and editor help on top.

/**
 * @typedef {{ expires: string, coins: number }} Batch
 *   Coins of one expiry batch; `expires` is its last valid day, YYYY-MM-DD.
 * @typedef {"growing" | "ripe"} Stage
 * @typedef {{ seed: string, cycle: number, stage: Stage, ripe_at_ms: number,
 *   yield_coins: number, stolen_coins: number }} Crop
 * @typedef {{ plot: number, empty: true }} EmptyPlot
 * @typedef {EmptyPlot | (Crop & { plot: number, empty?: undefined })} OwnerPlot
 * @typedef {EmptyPlot | { plot: number, empty?: undefined, seed: string, stage: Stage,
 *   ripe_at_ms: number, can_steal: boolean, can_water: boolean }} VisitorPlot
 * @typedef {{ seq: number, ts_ms: number, transfer_id: string, account: string,
 *   amount: number, balance_after: number, batches: Batch[], ref: string }} LedgerEntry
 * @typedef {{ player: string, since_ms: number, can_steal: boolean, can_water: boolean,
 *   next_ripe_at_ms: number | null }} Friend
 * @typedef {"friends" | "outgoing" | "incoming" | "blocked" | null} EdgeStatus
 * @typedef {{ player: string, status: EdgeStatus }} EdgeResult
 * @typedef {Record<string, never>} NoArgs
 * @typedef {{ plot: number }} PlotArgs
 * @typedef {{ player: string }} PlayerArgs
 * @typedef {{ player: string, plot: number }} TargetArgs
 */

/**
 * A result of an op that committed carries `entry_seq`, the journal entry its balance is
 * as of: the socket that asked gets no `balance` push for it (docs/protocol.md).
 * @typedef {{ player: string, balance: number, entry_seq: number, batches: Batch[],
 *   streak: number, signed_in_today: boolean, next_sign_in_coins: number, day: string,
 *   push_seq: number, rules_version: string }} StateResult
 * @typedef {{ coins: number, streak: number, day: string, already: boolean,
 *   balance: number, entry_seq?: number }} SignInResult
 * @typedef {{ limit?: number, before_seq?: number }} LedgerArgs
 * @typedef {{ entries: LedgerEntry[], next_before_seq: number | null,
 *   archived_through_seq: number }} LedgerResult
 * @typedef {{ now_ms: number, balance: number, plots: OwnerPlot[] }} FarmResult
 * @typedef {{ plot: number, crop: Crop, balance: number, entry_seq?: number }} PlantResult
 * @typedef {{ plot: number, coins: number, balance: number, entry_seq?: number }} HarvestResult
 * @typedef {{ player: string, now_ms: number, plots: VisitorPlot[] }} VisitResult
 * @typedef {{ player: string, plot: number, coins: number, advanced_ms: number,
 *   ripe_at_ms: number, balance: number, entry_seq?: number }} WaterResult
 * @typedef {{ player: string, plot: number, coins: number, balance: number,
 *   entry_seq?: number }} StealResult
 * @typedef {{ friends: Friend[], incoming: string[], outgoing: string[], blocked: string[],
 *   friends_max: number, blocks_max: number }} FriendsResult
 */

/**
 * Each op: its args and its result.
 * @typedef {{
 *   state: { args: NoArgs, result: StateResult },
 *   sign_in: { args: NoArgs, result: SignInResult },
 *   ledger: { args: LedgerArgs, result: LedgerResult },
 *   farm: { args: NoArgs, result: FarmResult },
 *   plant: { args: PlotArgs & { seed: string }, result: PlantResult },
 *   harvest: { args: PlotArgs, result: HarvestResult },
 *   visit: { args: PlayerArgs, result: VisitResult },
 *   water: { args: TargetArgs, result: WaterResult },
 *   steal: { args: TargetArgs, result: StealResult },
 *   friends: { args: NoArgs, result: FriendsResult },
 *   friend_request: { args: PlayerArgs, result: EdgeResult },
 *   friend_accept: { args: PlayerArgs, result: EdgeResult },
 *   friend_decline: { args: PlayerArgs, result: EdgeResult },
 *   friend_remove: { args: PlayerArgs, result: EdgeResult },
 *   friend_block: { args: PlayerArgs, result: EdgeResult },
 *   friend_unblock: { args: PlayerArgs, result: EdgeResult },
 *   growth: { args: NoArgs, result: Record<string, unknown> },
 *   tasks: { args: NoArgs, result: Record<string, unknown> },
 *   task_start: { args: { task: string }, result: Record<string, unknown> },
 *   task_claim: { args: { task: string }, result: Record<string, unknown> },
 *   mall: { args: NoArgs, result: Record<string, unknown> },
 *   mall_buy: { args: { item: string }, result: Record<string, unknown> },
 *   draw_pool: { args: { pool?: string }, result: Record<string, unknown> },
 *   draw_seed: { args: { client_seed: string }, result: Record<string, unknown> },
 *   draw: { args: { pool?: string }, result: Record<string, unknown> },
 *   draw_seeds: { args: { pool?: string }, result: Record<string, unknown> },
 * }} OpMap
 * @typedef {keyof OpMap} OpName
 */

/**
 * Each push: its `data`.
 * @typedef {{
 *   balance: { balance: number, delta: number, entry_seq: number },
 *   crop_ripe: { plot: number, cycle: number, seed: string },
 *   watered: { by: string, plot: number, advanced_ms: number, ripe_at_ms: number },
 *   stolen: { by: string, plot: number, coins: number },
 *   friend_request: { from: string, status: "incoming" | "friends" },
 *   streak_reminder: { streak: number, next_coins: number },
 *   resync: { snapshot_needed: true },
 *   level_up: Record<string, unknown>,
 *   task_done: Record<string, unknown>,
 *   mall_order: Record<string, unknown>,
 * }} PushMap
 * @typedef {keyof PushMap} PushName
 */

/**
 * The ops, each with what a retry with the same request id does (docs/protocol.md,
 * "Request ids and retries"): "replayed", the reply of a commit is stored under the id
 * and sent again, so coins move once; "rerun", nothing is stored and the op runs again
 * (reads, and the friend ops, which are idempotent). `satisfies` makes tsc fail when
 * this list and OpMap disagree.
 */
export const OPS = Object.freeze(
  /** @satisfies {Record<OpName, "replayed" | "rerun">} */ ({
    state: "rerun",
    sign_in: "replayed",
    ledger: "rerun",
    farm: "rerun",
    plant: "replayed",
    harvest: "replayed",
    visit: "rerun",
    water: "replayed",
    steal: "replayed",
    friends: "rerun",
    friend_request: "rerun",
    friend_accept: "rerun",
    friend_decline: "rerun",
    friend_remove: "rerun",
    friend_block: "rerun",
    friend_unblock: "rerun",
    growth: "rerun",
    tasks: "rerun",
    task_start: "replayed",
    task_claim: "replayed",
    mall: "rerun",
    mall_buy: "rerun", // answers the order as it stands: the order id is the request id's
    draw_pool: "rerun",
    draw_seed: "replayed",
    draw: "replayed",
    draw_seeds: "rerun",
  }),
);

/** The pushes, each with a line for people (shown in logs and the /play feed). */
export const PUSHES = Object.freeze(
  /** @satisfies {Record<PushName, string>} */ ({
    balance: "your coins changed",
    crop_ripe: "a crop of yours is ripe",
    watered: "a friend watered a crop of yours",
    stolen: "a friend stole from a crop of yours",
    friend_request: "a player asked you, or accepted your request",
    streak_reminder: "your sign-in streak breaks at midnight",
    resync: "missed pushes cannot be replayed: reload with state",
    level_up: "your member level went up",
    task_done: "a task paid you",
    mall_order: "a mall order of yours changed",
  }),
);

/** @type {readonly OpName[]} */
export const OP_NAMES = Object.freeze(/** @type {OpName[]} */ (Object.keys(OPS)));

/** @type {readonly PushName[]} */
export const PUSH_NAMES = Object.freeze(/** @type {PushName[]} */ (Object.keys(PUSHES)));
