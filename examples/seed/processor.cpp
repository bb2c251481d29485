#include <iostream>

#include "shmring.hpp"
#include "market_data.hpp"

int main() {
    try {
        // Attach to shared memory queue
        auto queue = SPSCSharedRingBuffer<MarketData, 4096>::attach("/market_data_feed");
        
        std::cout << "Processor started. Receiving market data...\n";
        
        size_t count = 0;
        while (true) {
            MarketData md;
            if (queue.try_pop(md)) {
                // Process market data
                // update_orderbook(md);
                
                if (++count % 10000 == 0) {
                    std::cout << "Processed " << count << " updates\n";
                }
            }
        }
        
    } catch (const std::exception& e) {
        std::cerr << "Error: " << e.what() << "\n";
        return 1;
    }
    
    return 0;
}
