"""IP address management: the pure allocator and its stores."""
