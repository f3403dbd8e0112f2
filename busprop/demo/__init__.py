"""``busprop demo``: one trace across every bus busprop knows, printed as a waterfall."""
