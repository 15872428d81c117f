"""Cross-cutting helpers: errors, atomic file output, device choice, seeding, logging."""
