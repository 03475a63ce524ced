"""AgriMarket: list farm produce once, sell it on every Vietnamese marketplace."""
