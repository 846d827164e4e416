package ingest

import (
	_ "embed"
	"fmt"
	"strings"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/redis/go-redis/v9"
)

// The apply script's calling convention, defined once: the constants below
// are what the Go side (layout) writes and, rendered by luaPrelude as Lua
// locals of the same names in upper case (argGroup -> ARG_GROUP), what
// apply.lua reads. Neither side writes a slot number of its own.
//
// KEYS: the stream, the dead-letter stream, the group's fence, then the
// batch's windows, seen
// sets, producer states and sample lists, which ARGV refers to by their KEYS
// index.
//
// ARGV: a fixed header, the entries' message ids (the script numbers
// entries 1..n in this order; version 1 and 2 entries first), then sections
// of records, each record a few fixed fields (offsets below,
// added to the record's first ARGV index) followed, for some kinds, by a
// variable tail:
//
//	seen groups   key, m, then m dedup ids (covering the next m entries,
//	              all of versions 1 and 2)
//	producers     key of the producer's state, m, then m chunks: chunk id,
//	              attempt, and the chunk's entries (numbers separated by
//	              spaces, read only when some entry is not the consumer's or
//	              the chunk was applied under another attempt)
//	count groups  key, field, first entry, m, sum[, counts]: entries
//	              first..first+m-1 of one window cell; counts, only when
//	              m > 1, are their counts separated by spaces, read only if
//	              some of them are not counted
//	sample groups key, m, the picks' entry numbers (separated by spaces,
//	              read only when some entry is not counted), then the m
//	              encoded samples, oldest first
//	dead entries  id, reason, fields, check ("1": write it only if still
//	              pending for the consumer when the fence moved)
//	expire pairs  key, unix seconds
//	ack-only ids  one id each
//
// The header says how many records each section holds.

// KEYS fixed at the front, 0-based (Lua index = value + 1).
const (
	keyStream = iota // the stream
	keyDead          // its dead-letter stream
	keyFence         // the group's fence (window.Keys.Fence)
	keyFixed         // number of fixed keys; the batch's keys follow
)

// ARGV header slots, 0-based (Lua index = value + 1).
const (
	argGroup        = iota // consumer group
	argConsumer            // this consumer's name: it claims the entries it applies
	argFence               // the fence when the batch was read
	argFirstID             // the lowest and highest entry ids: the range in which
	argLastID              // the consumer's pending entries are listed if the fence moved
	argPendingMax          // most pending entries listed
	argEntries             // entries to count: n
	argSeenGroups          // records in the seen section
	argProducers           // records in the producer section
	argNow                 // the consumer's clock, Unix seconds
	argDedupWindow         // the dedup window, seconds
	argDedupMax            // most chunk ids kept per producer
	argDedupShards         // hashes a new dedup generation is cut into (dedupShards)
	argCountGroups         // records in the count section
	argSampleGroups        // records in the sample section
	argDead                // records in the dead section
	argExpires             // records in the expire section
	argAckOnly             // ids in the ack-only section
	argSampleCap           // length cap of a sample list
	argSampleTTL           // sample list TTL, seconds
	argDeadMaxLen          // approximate MAXLEN of the dead-letter stream
	argMaxSeries           // most fields of one window hash before counts overflow
	// Cursor mode: the batch was read with XRANGE after argCursorPrev, the
	// group's last-delivered-id ("": group mode, the ownership checks
	// above); its highest id is argCursorLast and it spans argCursorRead
	// stream entries (the group's entries-read moves by that).
	argCursorPrev
	argCursorLast
	argCursorRead
	argHeader // header length: the n entry ids follow
)

// Field offsets within the records of each section, and the number of fixed
// fields (the record's width when it has no tail).
const (
	seenKey   = iota // KEYS index of the seen set
	seenLen          // m, the dedup ids that follow
	seenFixed        // fixed fields; the dedup ids follow
)

const (
	prodKey   = iota // KEYS index of the producer's state hash
	prodLen          // m, the chunks that follow
	prodFixed        // fixed fields; the chunks follow
)

const (
	chunkID      = iota // the batch id as 16 raw bytes
	chunkAttempt        // the attempt id as 8 raw bytes
	chunkEntries        // the chunk's entry numbers, separated by spaces
	chunkWidth
)

const (
	countKey   = iota // KEYS index of the window hash
	countField        // hash field of the cell
	countFirst        // 1-based number of the cell's first entry
	countLen          // m, entries in the cell
	countSum          // their counts' sum
	countFixed        // fixed fields; the counts string follows when m > 1
)

const (
	sampleKey     = iota // KEYS index of the sample list
	sampleLen            // m, the samples that follow
	sampleEntries        // the 1-based numbers of the samples' entries, separated by spaces
	sampleFixed          // fixed fields; the m encoded samples follow, contiguous so
	// that the script pushes them straight from ARGV when every entry counted
)

const (
	deadID     = iota // message id
	deadReason        // human-readable reason
	deadFields        // the original values as a JSON object
	deadCheck         // "1": only if still the consumer's pending entry
	deadWidth
)

const (
	expireKey = iota // KEYS index
	expireAt         // Unix seconds
	expireWidth
)

// luaConst is one constant of the protocol as the script sees it.
type luaConst struct {
	name  string
	value int
}

// protocol lists the constants the script reads, converted to Lua's
// 1-based indexes where they index KEYS or ARGV directly.
var protocol = []luaConst{
	{"KEY_STREAM", keyStream + 1},
	{"KEY_DEAD", keyDead + 1},
	{"KEY_FENCE", keyFence + 1},

	{"ARG_GROUP", argGroup + 1},
	{"ARG_CONSUMER", argConsumer + 1},
	{"ARG_FENCE", argFence + 1},
	{"ARG_FIRST_ID", argFirstID + 1},
	{"ARG_LAST_ID", argLastID + 1},
	{"ARG_PENDING_MAX", argPendingMax + 1},
	{"ARG_ENTRIES", argEntries + 1},
	{"ARG_SEEN_GROUPS", argSeenGroups + 1},
	{"ARG_PRODUCERS", argProducers + 1},
	{"ARG_NOW", argNow + 1},
	{"ARG_DEDUP_WINDOW", argDedupWindow + 1},
	{"ARG_DEDUP_MAX", argDedupMax + 1},
	{"ARG_DEDUP_SHARDS", argDedupShards + 1},
	{"ARG_COUNT_GROUPS", argCountGroups + 1},
	{"ARG_SAMPLE_GROUPS", argSampleGroups + 1},
	{"ARG_DEAD", argDead + 1},
	{"ARG_EXPIRES", argExpires + 1},
	{"ARG_ACK_ONLY", argAckOnly + 1},
	{"ARG_SAMPLE_CAP", argSampleCap + 1},
	{"ARG_SAMPLE_TTL", argSampleTTL + 1},
	{"ARG_DEAD_MAXLEN", argDeadMaxLen + 1},
	{"ARG_MAX_SERIES", argMaxSeries + 1},
	{"ARG_CURSOR_PREV", argCursorPrev + 1},
	{"ARG_CURSOR_LAST", argCursorLast + 1},
	{"ARG_CURSOR_READ", argCursorRead + 1},
	{"ARG_ENTRY_IDS", argHeader + 1},

	// Offsets are added to a record's first ARGV index: not shifted.
	{"SEEN_KEY", seenKey},
	{"SEEN_LEN", seenLen},
	{"SEEN_FIXED", seenFixed},
	{"PROD_KEY", prodKey},
	{"PROD_LEN", prodLen},
	{"PROD_FIXED", prodFixed},
	{"CHUNK_ID", chunkID},
	{"CHUNK_ATTEMPT", chunkAttempt},
	{"CHUNK_ENTRIES", chunkEntries},
	{"CHUNK_WIDTH", chunkWidth},
	{"COUNT_KEY", countKey},
	{"COUNT_FIELD", countField},
	{"COUNT_FIRST", countFirst},
	{"COUNT_LEN", countLen},
	{"COUNT_SUM", countSum},
	{"COUNT_FIXED", countFixed},
	{"SAMPLE_KEY", sampleKey},
	{"SAMPLE_LEN", sampleLen},
	{"SAMPLE_ENTRIES", sampleEntries},
	{"SAMPLE_FIXED", sampleFixed},
	{"DEAD_ID", deadID},
	{"DEAD_REASON", deadReason},
	{"DEAD_FIELDS", deadFields},
	{"DEAD_CHECK", deadCheck},
	{"DEAD_WIDTH", deadWidth},
	{"EXPIRE_KEY", expireKey},
	{"EXPIRE_AT", expireAt},
	{"EXPIRE_WIDTH", expireWidth},

	// Not a slot: the most hosts a minute's host sums hash holds, and the
	// most cells its window hash holds before they move into pieces.
	{"HOST_SUMS_MAX", window.HostSumsMax},
}

// luaPrelude renders protocol as Lua locals on one line, so that line
// numbers in the script's error messages are apply.lua's plus one.
func luaPrelude() string {
	var b strings.Builder
	b.WriteString("local ")
	for i, c := range protocol {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name)
	}
	b.WriteString(" = ")
	for i, c := range protocol {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, c.value)
	}
	b.WriteString(" -- generated from backend/ingest/protocol.go\n")
	return b.String()
}

//go:embed apply.lua
var applyBody string

// applySource is the script as Redis runs it: the protocol's constants, then
// apply.lua.
var applySource = luaPrelude() + applyBody

var applyScript = redis.NewScript(applySource)
