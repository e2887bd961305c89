"""Newsletter: lists, subscribers with consent proof, campaigns and automated newsletters."""
