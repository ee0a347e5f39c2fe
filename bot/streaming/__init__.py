"""Streaming answers into chat messages: one editor for every platform (`editor`), the shared rate
budgets it spends (`budget`), where long answers split (`splitting`), and the clock it runs on.
"""
