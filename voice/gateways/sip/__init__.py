"""SIP/RTP gateway: a small asyncio user-agent server that answers calls into the call loop."""

from voice.gateways.sip.gateway import SipGateway, SipOptions

__all__ = ["SipGateway", "SipOptions"]
