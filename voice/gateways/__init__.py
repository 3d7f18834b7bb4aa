"""Gateways from phone systems into the call loop: SIP/RTP, AudioSocket, WebSocket streams."""
