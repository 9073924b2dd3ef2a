"""The approval subsystem: policy, lifecycle, service, receipts and the MCP tools agents call."""
