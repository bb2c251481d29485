#include <chrono>
#include <iostream>
#include <thread>

#include "shmring.hpp"
#include "market_data.hpp"

int main() {
    try {
        // Create shared memory queue
        SPSCSharedRingBuffer<MarketData, 4096> queue("/market_data_feed");
        
        std::cout << "Feed handler started. Sending market data...\n";
        
        uint64_t seq = 0;
        while (true) {
            // Simulate receiving market data from exchange
            MarketData md(
                std::chrono::system_clock::now().time_since_epoch().count(),
                seq % 100,    // symbol_id
                100.0 + seq * 0.01,  // bid
                100.05 + seq * 0.01, // ask
                100, 100,     // sizes
                seq++         // sequence
            );
            
            queue.push_wait(md);
            
            // Simulate exchange tick rate
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        
    } catch (const std::exception& e) {
        std::cerr << "Error: " << e.what() << "\n";
        return 1;
    }
    
    return 0;
}
