// Package chunk reads Fluent Bit chunks in place — a concatenation of msgpack
// events, [ts, record] or [[ts, metadata], record] — without copying the chunk
// or building interface maps, and writes them for tests, benchmarks and the demo.
package chunk
