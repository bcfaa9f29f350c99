"""What the ops, sensors and CLI share beyond one transition: a lifecycle call plus the FL APIs it concerns."""
