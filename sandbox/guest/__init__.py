"""Sources of the Code Mode guest component (built by ``sandbox.build``; ``guest_app`` runs only inside wasm)."""
