"""What every long job shares: job rows, locks, stop requests, progress."""
