"""The vocabulary every layer speaks: errors, money, currencies. No I/O."""
