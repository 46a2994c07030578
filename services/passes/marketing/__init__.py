"""Marketing on the card: offers in the card's marketing slot, the one notification policy,
consent, and the jobs that expire offers and send what quiet hours held back."""
