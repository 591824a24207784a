"""The pytest face: `pytest --model`. plugin.py is the entry point; session.py and state.py run the
models; one module per check family (families.py lists them). Nothing outside this folder imports it."""
