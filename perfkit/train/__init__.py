"""The PPO training loop perfkit measures, its cadences and its vector-env set-up."""
