from tests.channels.wechat.helpers import receiver, receiver_server, receiver_url, sim, simulator_server

__all__ = ["receiver", "receiver_server", "receiver_url", "sim", "simulator_server"]
