// A file of a room that is not below observe/.
#pragma once
