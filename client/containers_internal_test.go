package client

// ContainerForID returns a Container for id without reading its record,
// for tests against a fake daemon that has only a tasks service.
func ContainerForID(c *Client, id string) *Container { return &Container{client: c, id: id} }
