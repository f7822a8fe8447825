"""`python -m wizchat.runtime`: serve one chatbot, configured entirely by its environment (CUSTOM_* and
WIZCHAT_*; see wizchat.runtime.config), with gunicorn.

A missing or malformed variable stops it before it listens: one line per problem on stderr (never a secret's
value), exit status 2."""

import os
import sys


def main() -> int:
    os.environ["DJANGO_SETTINGS_MODULE"] = "wizchat.runtime.settings"
    import django

    django.setup()
    from .config import ConfigInvalid, config_load

    try:
        config = config_load(os.environ)
    except ConfigInvalid as error:
        for line in error.problems:
            print(line, file=sys.stderr)
        print(f"The chatbot runtime did not start: {len(error.problems)} problem(s) in its environment.",
              file=sys.stderr)
        return 2
    from .server import serve

    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
