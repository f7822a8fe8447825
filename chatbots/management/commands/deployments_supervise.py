"""Run the local deployment target's supervisor in the foreground (started by `make run`)."""

import signal

from django.core.management.base import BaseCommand

from chatbots.supervisor import Supervisor


class Command(BaseCommand):
    help = ("Start, switch, restart and stop the runtimes of chatbots deployed to this machine (target local), each "
            "behind its stable port, until interrupted. `make run` runs it.")

    def handle(self, *args, **options):
        supervisor = Supervisor()

        def stop(*_):
            supervisor.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        supervisor.run()
        self.stdout.write("Deployments stopped.")
