"""Labs provide two regions and the descriptor that tells the experiments about them."""
