// Package streamshard spreads one fleet's stream entries over N stream
// shards whose keys hash to different Redis Cluster slots, so that N nodes
// share the writes and the apply work. Both halves use it: the plugin picks
// the shard of each entry (Of), keyalertd consumes and reads every shard
// (Key, Keys).
//
// Shard 0 is the stream key itself, so N = 1 is the layout of an unsharded
// keyalert, key for key. Shard i >= 1 gets a hash tag of its own, "#i" added
// inside the stream's tag (or to the whole key when it has none):
//
//	keyalert:events      -> keyalert:events#1, keyalert:events#2 ...
//	{app}:events         -> {app#1}:events, {app#2}:events ...
//
// Every key derived from a shard (windows, dedup state, dead letters; see
// stream.HashTag) carries that shard's tag, so a shard's apply script still
// touches one slot. A host's entries go to one shard: xxh3(host) mod N.
package streamshard

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/zeebo/xxh3"
)

// Max bounds the shard count: far more slots than nodes any cluster has, and
// every query of the counts API reads each shard once.
const Max = 64

// Key names shard i of streamKey; shard 0 is streamKey itself.
func Key(streamKey string, i int) string {
	if i <= 0 {
		return streamKey
	}
	suffix := "#" + strconv.Itoa(i)
	if a := strings.IndexByte(streamKey, '{'); a >= 0 {
		if b := strings.IndexByte(streamKey[a+1:], '}'); b > 0 {
			end := a + 1 + b // index of the closing brace
			return streamKey[:end] + suffix + streamKey[end:]
		}
	}
	return streamKey + suffix
}

// Keys lists the keys of shards 0..n-1 of streamKey (at least shard 0).
func Keys(streamKey string, n int) []string {
	n = max(n, 1)
	out := make([]string, n)
	for i := range out {
		out[i] = Key(streamKey, i)
	}
	return out
}

// Of is the shard of host's entries when there are n shards. With n <= 1 it
// is 0 without hashing.
func Of(host string, n int) int {
	if n <= 1 {
		return 0
	}
	return int(xxh3.HashString(host) % uint64(n))
}

// Check validates a shard count as a setting.
func Check(n int) error {
	if n < 1 || n > Max {
		return fmt.Errorf("want between 1 and %d shards", Max)
	}
	return nil
}
