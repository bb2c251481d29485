/*
 * market_data.hpp - the MarketData message of the seed guide's complete
 * example (feed_handler.cpp, processor.cpp). The guide used it without
 * defining it; this is the definition its constructor call implies:
 *   MarketData(timestamp, symbol_id, bid, ask, bid_size, ask_size, sequence)
 * Trivially copyable, 48 bytes, so it travels through a shared-memory ring.
 */
#ifndef SHMRING_SEED_MARKET_DATA_HPP
#define SHMRING_SEED_MARKET_DATA_HPP

#include <cstdint>
#include <type_traits>

struct MarketData {
	int64_t timestamp = 0; /* the sender's clock, in its clock's ticks */
	uint64_t sequence = 0;
	double bid = 0.0;
	double ask = 0.0;
	uint32_t symbol_id = 0;
	uint32_t bid_size = 0;
	uint32_t ask_size = 0;

	MarketData() = default;
	MarketData(int64_t timestamp_, uint32_t symbol_id_, double bid_, double ask_,
		   uint32_t bid_size_, uint32_t ask_size_, uint64_t sequence_)
		: timestamp(timestamp_), sequence(sequence_), bid(bid_), ask(ask_),
		  symbol_id(symbol_id_), bid_size(bid_size_), ask_size(ask_size_)
	{
	}
};

static_assert(std::is_trivially_copyable_v<MarketData>, "MarketData must be trivially copyable");

#endif /* SHMRING_SEED_MARKET_DATA_HPP */
