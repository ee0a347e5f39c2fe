"""`python -m tests.fakes.openai --port P`: the fake OpenAI in a process of its own."""

from tests.fakes.openai.process import main

main()
