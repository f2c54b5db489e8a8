"""``python -m modelserver --model_class module:Class``: serve a custom Model subclass."""

from .server.cli import main

if __name__ == "__main__":
    main()
