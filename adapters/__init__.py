"""Platform adapters: each turns a platform event into one core call, and the core's stream into
the platform's post and edit calls. They hold no prompts, SQL, retrieval or model calls."""
