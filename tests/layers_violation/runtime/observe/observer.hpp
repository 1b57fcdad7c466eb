// A file of a room beside host/.
#pragma once
