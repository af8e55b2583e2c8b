"""The console's screens. They talk to nodes only through an injected ClusterService."""
